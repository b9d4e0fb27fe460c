"""`aibrix-scaler local`: the scaler against the in-memory Kubernetes API
(`runtime_components.common.fake_kube`), whose Deployments really start and stop engine
processes (`launcher.py`), with optional closed-loop load (`load.py`)."""
