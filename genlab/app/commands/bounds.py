"""The most a command makes or reads at once (each is named in its one-line refusal): light, for the Typer
signatures in app/cli.py, which load no torch."""

# the most a command makes or reads at once; each is named in its one-line refusal
SEED_MAX = 2**63 - 1  # torch's generators take 64-bit seeds
GRID_MAX = 1024  # samples in one PNG grid (a folder takes more)
SAMPLES_MAX = 1_000_000  # samples written to a folder or a CSV file
RECONSTRUCT_MAX = 1024
EVAL_MAX = 100_000  # generated images per metric (all are held in memory)
TRANSLATE_PIXELS = 2048 * 2048  # pixels of one image through a translation network (no tiles)
UPSCALE_PIXELS = 2048 * 2048  # pixels of one input image up-scaled (4x: a 8192 x 8192 output)
TILE_MAX = 4096
