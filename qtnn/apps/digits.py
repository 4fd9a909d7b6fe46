"""The digits data set and the hybrid classifier trained on it.

* :func:`load_digits_split`: scikit-learn's bundled digits (8x8 = 64 = 2^6
  pixels, no network needed) as float64 tensors, a fixed stratified split.
* :class:`HybridConfig` / :class:`HybridClassifier`: ``MPOLinear (64 ->
  hidden) -> tanh -> QuantumHead`` (or a :class:`~qtnn.nn.DisentangledLinear`
  head) with the settings stored in checkpoints.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from qtnn.errors import QtnnError
from qtnn.validate import check_alloc, check_choice, check_int, check_real, pow2, renamed

if TYPE_CHECKING:
    from qtnn.nn.quantum_layers import DisentangledLinear, QuantumHead

__all__ = ["load_digits_split", "HybridConfig", "HybridClassifier"]


def load_digits_split(seed: int = 0, test_size: float = 0.25) -> tuple[Any, Any, Any, Any]:
    """Digits as float64 torch tensors ``(x_train, y_train, x_test, y_test)``, pixels scaled to [0, 1].

    scikit-learn's bundled 8x8 digits (no download), split stratified with
    ``random_state=seed``.

    Examples
    --------
    >>> xtr, ytr, xte, yte = load_digits_split(0)
    >>> tuple(xtr.shape), tuple(xte.shape), float(xtr.max())
    ((1347, 64), (450, 64), 1.0)
    """
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from qtnn.errors import QtnnError
    from qtnn.validate import check_int, check_real

    seed = check_int("seed", seed, minimum=0, maximum=2**32 - 1)
    test_size = check_real("test_size", test_size, minimum=0.0, strict_min=True)
    if not 0.01 <= test_size <= 0.99:
        raise QtnnError(f"test_size must be a fraction in [0.01, 0.99] of the 1797 digits, got {test_size!r}")
    data = load_digits()
    x = data.data / 16.0
    xtr, xte, ytr, yte = train_test_split(x, data.target, test_size=test_size,
                                          random_state=seed, stratify=data.target)
    return (torch.tensor(xtr), torch.tensor(ytr), torch.tensor(xte), torch.tensor(yte))


@dataclass
class HybridConfig:
    """Architecture and training settings (stored in checkpoints).

    Examples
    --------
    >>> HybridConfig().n_qubits
    6
    """

    in_features: int = 64
    hidden: int = 64
    max_bond: int = 8
    n_qubits: int = 6
    layers: int = 4
    n_classes: int = 10
    head: str = "quantum"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.01
    seed: int = 0
    #: deprecated name of ``max_bond`` (older checkpoints store it); not a field
    bond_dim: InitVar[int | None] = None

    def __post_init__(self, bond_dim: int | None) -> None:
        # max_bond always has a value (its default), so it is passed as the default, not as given
        self.max_bond = renamed("HybridConfig", "bond_dim", "max_bond", bond_dim, None, default=self.max_bond)

    def check(self) -> HybridConfig:
        """Validate every field; returns ``self`` (raises :class:`~qtnn.errors.QtnnError`).

        Examples
        --------
        >>> HybridConfig(layers=2).check().layers
        2
        """
        for name in ("in_features", "hidden", "max_bond", "n_qubits", "n_classes", "epochs",
                     "batch_size"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("layers", self.layers, minimum=0)
        check_int("seed", self.seed, minimum=0)
        check_choice("head", self.head, ("quantum", "disentangled"))
        if self.hidden > pow2(self.n_qubits):
            raise QtnnError(f"hidden={self.hidden} does not fit the 2**n_qubits={pow2(self.n_qubits):g} "
                            "amplitudes of the head")
        check_real("lr", self.lr, minimum=0, strict_min=True)
        check_alloc(f"the head's gate angles (layers={self.layers}, n_qubits={self.n_qubits})",
                    self.layers * max(self.n_qubits - 1, 0) * 6,
                    hint="use fewer layers or qubits")
        return self


class HybridClassifier(nn.Module):
    """``MPOLinear -> tanh -> QuantumHead`` (or ``DisentangledLinear``).

    Examples
    --------
    >>> import torch
    >>> model = HybridClassifier(HybridConfig(layers=1))      # float64 by default
    >>> tuple(model(torch.rand(3, 64, dtype=torch.float64)).shape)
    (3, 10)
    """

    def __init__(self, config: HybridConfig, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        from qtnn.nn import DisentangledLinear, MPOLinear, QuantumHead

        self.config = config.check()
        c = config
        self.features = MPOLinear(c.in_features, c.hidden, c.max_bond, dtype=dtype)
        self.head: QuantumHead | DisentangledLinear
        if c.head == "quantum":
            self.head = QuantumHead(c.hidden, c.n_qubits, c.layers, c.n_classes, dtype=dtype)
        else:
            head = DisentangledLinear(c.hidden, c.n_classes, c.layers, c.layers, c.max_bond,
                                      dtype=dtype)
            self.head = head
            with torch.no_grad():  # start from random circuits, not the identity
                for g in (head.U, head.V):
                    g.angles.uniform_(0, 6.283185307179586)

    def set_backend(self, backend: str, qdevice: Any = None, *, device: Any = None) -> None:
        """Switch the quantum part between the reference path and a PennyLane device (``qdevice``)."""
        self.head.set_backend(backend, qdevice, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.features(x)))
