"""Performance bench: the harness's speed measured against plain PyTorch, in one process.

``python -m benchmark bench`` measures, on the same model, data and device:

- ``threads`` (CPU): the minimal loop at one thread against torch's thread count, which shows
  when a shared machine makes several OpenMP threads slower than one;
- ``throughput``: examples/s of the harness's training loop (:class:`benchmark.ml.train.Trainer`
  with a real method from :func:`benchmark.ml.method.build_method`) against a minimal
  hand-written PyTorch loop with the same math (same MLP and initial weights, the ``vae``
  plugin's loss, same batch size, randperm slicing of an in-memory tensor), per MLP preset;
  also both loops with Adam's fused kernel, which is what a one-line optimiser change is worth;
- ``metrics``: the cost of each end-of-run metric at its default settings on the test split
  (encoding, active units, KL, MI, reconstruction, per-class, IW-NLL, decoder geometry, noise
  sensitivity), the runner's per-epoch curve points and its whole ``evaluate()`` (with the
  defaults and with the ``quick`` grid's ``[eval]`` table), relative to one training epoch,
  and the resulting evaluation share of the ``quick`` grid's training time;
- ``methods``: the cost per training step (and of ``evaluate()``) of every registered method
  relative to ``vae`` (methods that do not apply to the MLP, such as text-only ones, listed as such);
- ``pythae``: pythae's published trainer (optional dependency) on the same encoder/decoder,
  data and batch size;
- ``seed_batching`` (stretch): S seeds of one configuration trained as one model batched with
  ``torch.func.vmap`` over stacked parameters, against S minimal loops one after another;
- ``compile`` (only with ``--compile``): ``torch.compile`` on the minimal loop;
- ``packing`` (only with ``--sections packing``): packs of K runs against one run;
- ``text`` (only with ``--sections text``): a training step of the PTB LSTM VAE (``lstm-ptb``,
  ``lstm-small``) through the harness (``Trainer``, ``vae``, length buckets) against a
  hand-written LSTM VAE with the same math, weights, optimiser and batches (bound: 1.2x).
- ``tables`` (only with ``--sections tables``): one update of ``runs.csv`` and ``summary.csv``
  after a finished run (``ResultStore.write_table``, incremental) against the full rebuild from
  every record it replaced, as a results folder grows to 2,000 copies of real records.

Measurement discipline (the machine may be shared): the arms of a comparison are interleaved
(A B C A B C ...) in one process, the first repetition of every arm is a warm-up and is
dropped, and the ratio is the median of the per-repetition ratios (``ratio_of_medians`` is
reported too). Absolute times move with the load (recorded as ``os.getloadavg()`` before and
after); the ratios are what to read.

Modules: :mod:`.common` (settings, timing helpers, the machine, the data), :mod:`.loops` (the
minimal loop and the harness's), :mod:`.speed` (throughput, threads, seed batching, compile),
:mod:`.costs` (metrics, methods, the quick grid's evaluation share), :mod:`.peer` (pythae),
:mod:`.packing` (packs), :mod:`.text` (the LSTM text VAE), :mod:`.tables` (the results tables),
:mod:`.main` (the driver, the table, the options).
"""
