"""The gate's web pages: ``/gatekeeper/`` on a gated server, rendered on the server.

What holds production and why, every decision with its checks and charts, a dry run, and the
audited rollback and override forms — readable without the CLI, under the same auth as the MLflow
UI. Templates and the stylesheet ship inside this package (no build step, nothing fetched from
elsewhere), so the pages work on a server with no network.

This module stays empty so that ``plugins.registry_store`` can import ``plugins.pages.paths``
(the decision page's address, which it mirrors onto version tags) without loading Flask views.
"""
