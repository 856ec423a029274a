"""Imported first by the ``training`` package: Keras starts without TensorFlow's native
start-up notices on stderr (see :mod:`tiledseg.quiet`), so ``python -m training.train`` and
``python -m training.evaluate`` begin with their own output. Every training module imports
Keras anyway; this only decides where that first import happens."""

from tiledseg.quiet import import_keras_quietly

import_keras_quietly()
