"""lenspipe: simulation-based inference of strong gravitational lenses, as a Snakemake workflow."""

__version__ = "0.1.0"
