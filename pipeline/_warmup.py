"""Preloaded by the multiprocessing forkserver before it forks extraction workers (pipeline.frontend).

Importing this module loads the audio front end and builds the resampler's phase tables of the commonest
rates (44.1 and 48 kHz) once, so every forked worker starts warm. It never imports TensorFlow.
"""

from vggish import input as _front_end  # noqa: F401 - loaded here so that forked workers inherit it
from vggish.resample import warm_up

warm_up()
