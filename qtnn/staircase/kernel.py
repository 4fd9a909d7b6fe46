"""The compiled reference kernel of trainable staircases: the entry points other packages use.

One call runs a whole staircase (or brickwall, through a gate-position list)
on a batch of states each way: :func:`staircase_forward` returns the
amplitudes or the probabilities, :func:`staircase_backward` the gradients with
respect to the inputs and the magic-basis angles.  The implementation (numba,
compiled on first use and cached on disk) lives in a private module of this
package; see its documentation for the memory layout and the exact
gradient identity.

Examples
--------
>>> import numpy as np
>>> from qtnn.staircase import kernel
>>> x = np.eye(4)[:1]                          # |00>, batch of one
>>> angles, dets = np.zeros((1, 6)), np.ones(1)
>>> out, state, r2, status = kernel.staircase_forward(x, angles, dets, np.zeros(1, np.int64), False, 2,
...                                                    kernel.MODE_STATE)
>>> out.shape, int(status)
((1, 4), 0)
"""

from __future__ import annotations

from qtnn.staircase._jit import (
    BAD_ANGLES,
    MODE_PROBS,
    MODE_STATE,
    ZERO_ROW,
    staircase_backward,
    staircase_forward,
)

__all__ = ["staircase_forward", "staircase_backward", "MODE_STATE", "MODE_PROBS", "BAD_ANGLES", "ZERO_ROW"]
