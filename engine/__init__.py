"""Neural Collage engine: sCBN, feature blending, manifold projection and Poisson blending on conditional GANs."""
__version__ = "0.1.0"
