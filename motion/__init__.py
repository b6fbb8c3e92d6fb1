"""Where the face goes: keypoint files and V-Kps images, retargets, speech-driven head motion, and the plan that turns
a driving sequence into the video's keypoints. Imports modules/, pipelines/ and media/ only."""
