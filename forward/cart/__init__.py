"""CAR-T reaction–diffusion–chemotaxis model of a solid tumour (seed 001; SPEC §3)."""
