"""Many inputs at once: ``auto`` over files, folders, patterns and zarr arrays, in this process or
as one task per input on dask.distributed (a ``LocalCluster`` or any scheduler).

>>> from dask.distributed import Client                            # doctest: +SKIP
>>> from napari_segany.batch import run_auto
>>> with Client("tcp://scheduler:8786") as client:                 # doctest: +SKIP
...     results = run_auto("plates/*.tif", "out", client=client)

:mod:`.inputs` names and opens the inputs (:mod:`.zarr_input` the zarr ones), :mod:`.outputs`
plans, checks and writes the outputs, :mod:`.item` segments one input, :mod:`.embed` embeds one
volume into its cache, :mod:`.propagate` propagates one volume's drawn objects, :mod:`.cluster`
runs them all, and :mod:`.worker` is what runs on a dask worker (it needs ``distributed``; nothing
else here does).
"""

from .cluster import connect, local_workers, run_auto, run_embed, run_jobs, run_propagations
from .embed import plan_caches
from .item import AutoOptions
from .propagate import plan_propagations

__all__ = ["AutoOptions", "connect", "local_workers", "plan_caches", "plan_propagations", "run_auto", "run_embed",
           "run_jobs", "run_propagations"]
