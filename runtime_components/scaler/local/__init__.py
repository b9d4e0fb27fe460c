"""A local stand-in for the Kubernetes API the scaler uses, whose scale target really starts
and stops engine processes: what `aibrix-scaler local` and the end-to-end tests run against."""
