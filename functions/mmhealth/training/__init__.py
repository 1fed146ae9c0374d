"""The features -> dataset -> training stage of a run, owned here.

- `featurize`: rebuild features.clinical / labels / genomic / imaging and identity.links from the lake;
- `dataset`: join them with the labels into a content-addressed snapshot in S3;
- `stage`: the Features step of a run (rebuild when the run changed rows, then the snapshot);
- `job`: the run's training job on that snapshot (start, poll); `catalog`: its outputs committed.
A run is one wave of one delivery (mmhealth.waves), so each delivery rebuilds and trains once; runs of
different deliveries may overlap, and the Features step tolerates that by itself (see `stage`).
"""
