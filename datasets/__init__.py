"""Datasets for training FoldedCNNs: loaders per task family, curriculum and distillation wrappers."""
from datasets.curriculum import CurriculumDataset, curriculum_schedule
from datasets.distill import DistillationDataset
from datasets.loaders import DATA_DIR, DataMissing, data_location, default_data_root, load_splits

__all__ = ["CurriculumDataset", "curriculum_schedule", "DistillationDataset", "DATA_DIR", "DataMissing",
           "data_location", "default_data_root", "load_splits"]
