"""Scale-out on Apache Beam: `audiotag beam-extract` and `audiotag beam-tag` (install `audiotag[beam]`).

The same stages as `audiotag extract` and `audiotag tag` (vggish decoding / resampling / log-mel, the VGGish
CNN, PCA postprocessing, the SequenceExample serializer, the classifier head), arranged as a Beam pipeline
that runs unchanged on the local portable runner (multi-process) or on Dataflow, Flink or Spark:

- sources: INPUT arguments -> (path, clip id) pairs (local as `extract` does; gs:// s3:// hdfs:// through
  Beam's FileSystems), and local copies of remote files for decoding.
- stages: segment planning, decoding, the RunInference model handler, joining segments into clips, records.
- extract: the beam-extract pipeline, its options, output naming, resume and exit status.
- tag: the beam-tag pipeline (embeddings or audio -> JSON Lines).
- portable: Beam's job service and an external SDK worker pool on this machine, to run either pipeline
  through the PortableRunner as a cluster would (tests, benchmarks).

Importing this package does not import Beam; its modules do.
"""
