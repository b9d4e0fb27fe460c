"""``aibrix-local``: run a whole InferenceStack on this machine, from the compiled output.

Where it sits: beside the compiler and the runtime components, never inside either. It
compiles the stack with the compiler's own pipeline (:mod:`local_stack.localize` takes each
component's configuration from the compiled ConfigMaps and rewrites only what must change on
loopback), then starts every component through its console script as a subprocess
(:mod:`local_stack.supervisor`): it never imports a runtime component. ``smoke`` drives the
running stack through Envoy and checks that metrics moved (:mod:`local_stack.smoke`).
"""
