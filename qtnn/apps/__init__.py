"""Applications built on the qtnn library: data, models, training, demos, benchmarks, the catalogue.

Nothing in the library packages (:mod:`qtnn.tn`, :mod:`qtnn.staircase`,
:mod:`qtnn.quantum`, :mod:`qtnn.nn`, :mod:`qtnn.analysis`,
:mod:`qtnn.compress`) imports from here; the command line (:mod:`qtnn.cli`)
sits above.

* :mod:`qtnn.apps.digits`: scikit-learn's bundled digits and the hybrid classifier.
* :mod:`qtnn.apps.loop`: the training loop (one process or every DDP rank).
* :mod:`qtnn.apps.train`: the main job (``qtnn train``), checkpoints.
* :mod:`qtnn.apps.distributed`: data-parallel training (DDP).
* :mod:`qtnn.apps.demo`: the compression demo (``qtnn demo``).
* :mod:`qtnn.apps.bench`, :mod:`qtnn.apps.bench_circuits`: ``qtnn bench``.
* :mod:`qtnn.apps.catalogue`: the committed ``circuits/`` catalogue.
* :mod:`qtnn.apps.lm`: SmolLM2, MiniLM and offline text corpora.
* :mod:`qtnn.apps.models`: compressed models on disk.

Examples
--------
>>> from qtnn.apps.digits import load_digits_split
>>> x_train, y_train, x_test, y_test = load_digits_split(0)
>>> tuple(x_train.shape), int(y_train.max())
((1347, 64), 9)
"""
