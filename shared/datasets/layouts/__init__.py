"""The five dataset layouts EdgeFarm understands, one module each: ``voc_seg``,
``imagenet_val``, ``imagefolder``, ``mnist_idx`` and ``cifar10_bin``. Each holds the
layout's planner (``plan(tree, split)`` -> ``plan.Plan``, from the scanned file list
alone) and says which small files it reads (``reads(path)``); ``plan`` holds what they
share. The catalog (``edgefarm.shared.datasets.catalog``) registers them by name.
"""
