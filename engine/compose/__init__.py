"""Back into the photo: the edited crop placed and blended inside the selection (``compose``), by Poisson blending
(``poisson``) or a soft paste."""
