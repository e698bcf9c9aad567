"""Acting: policy (when to act), the rotation workflow and its journal, the reload ladder."""
