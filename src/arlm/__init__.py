"""arlm: autoregressive models made runnable.

The chain rule p(x) = ∏_t p(x_t | x_<t) turns any model of the next token into a model of the whole
sequence. Every model family here implements one interface (:class:`arlm.models.base.ARModel`), and
training, evaluation and decoding are written once against it.
"""

from arlm.errors import ArlmError

__version__ = "0.1.0"
__all__ = ["ArlmError", "__version__"]
