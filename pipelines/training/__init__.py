"""The training side: one training step (step.py), the training dataset (dataset.py) and its files
(dataset_files.py). Nothing on the inference side imports this package."""
