"""The application: inference.py's flags and requests, one generation function (VideoGenerator) for every front end,
resumable runs, batch generation, the web UI and the keypoint preview. The top layer: nothing below imports it."""
