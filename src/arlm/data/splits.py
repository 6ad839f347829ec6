"""The split names and fractions every corpus shares (text and images): train/val/test ≈ 80/10/10,
and ``all`` for the whole corpus, unsplit."""

SPLITS = ("train", "val", "test")
ALL = "all"
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, val, test
