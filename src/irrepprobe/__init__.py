"""irrepprobe: which irreducible representations does a trained equivariant network really use?"""
__version__ = "0.1.0"
