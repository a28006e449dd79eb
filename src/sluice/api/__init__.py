"""The HTTP API: health document, admin controls, metrics, and (later) intake."""
