import sys
from pathlib import Path

# tests/ holds shared helpers (toy_models.py, …) that test modules import by name.
sys.path.insert(0, str(Path(__file__).parent))
