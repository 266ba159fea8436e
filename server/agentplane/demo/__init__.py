"""The demo: an offline agent (``agent``) and a browser page served at ``/demo/`` (``page``)."""
