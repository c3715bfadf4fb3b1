# Data-only stand-in module: its effects are the SQL files in data/.
