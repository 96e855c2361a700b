"""The gate's user-facing floor: ``GatekeeperClient`` and the ``gatekeeper`` command.

It sits above ``plugins`` because, given a database URI instead of a server URL, the client opens
the gated store in-process (``plugins.build_store``) and calls the server's own views
(``plugins.server_app``): living in ``registry_hooks`` it made the gate's pure floor import the
MLflow server. ``projects`` ask the gate through this client (``retrain`` promotes, ``evaluate``
reads the baseline, the policy's slices and the verdict preview), so it sits below them:
``benchmarks`` → ``projects`` → ``gatekeeper_cli`` → ``plugins`` → ``registry_hooks``.
"""
