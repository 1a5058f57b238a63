"""Data: the synthetic world, real data set readers and downloads, video reading and the clip cache."""
