"""Media in and out: audio decoding, video decoding and MP4 writing, face detection and keypoint extraction. Imports
modules/ and pipelines/ (the sampling rate) only."""
