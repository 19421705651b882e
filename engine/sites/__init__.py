"""What happens at one site of the generator: sCBN at a conditional-normalisation site (``scbn``, eq. 1-2) and
feature blending with the shift operator at a blend site (``blending``, eq. 3).  The layer below the generator
contract (engine/generator.py): model families build their normalisation layers on ``scbn.ConditionalNorm``; the
collage operations (engine/collage, engine/blend) fill in the class maps and blend plans these sites read."""
