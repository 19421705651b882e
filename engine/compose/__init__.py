"""Back into the photo: the edited crop is placed and Poisson-blended inside the selection (``poisson``)."""
