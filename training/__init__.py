"""The training side: one training step (step.py), the training dataset (dataset.py) and its files
(dataset_files.py). It imports modules/, pipelines/, media/ and motion/; nothing
imports it but train.py and the training scripts."""
