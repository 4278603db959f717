"""Quality measurement for LayerLift's decomposers.

`bench.synthetic` draws layered designs whose true layers are known exactly, `bench.layerd_metric`
scores a predicted stack against them the way LayerD and Qwen-Image-Layered report results, and
`bench/quality.py` runs a backend over both and prints the tables. Nothing here needs a GPU, model
weights or a data set download, so the numbers can be reproduced on any machine and in CI.
"""
