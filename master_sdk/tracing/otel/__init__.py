"""OpenTelemetry export of runs with the GenAI semantic conventions (the ``otel`` extra).

* :mod:`.spans` builds spans from committed trace events (no OpenTelemetry import);
* :mod:`.direct` writes the same spans straight as OTLP protobuf bytes (the live export);
* :mod:`.wire` encodes the OTLP protobuf messages;
* :mod:`.ids` derives trace and span ids from the run, so a paused run is one trace;
* :mod:`.semconv` names the attributes (latest, legacy or both sets);
* :mod:`.sender` is the only module that imports ``opentelemetry`` (and only when on);
* :mod:`.pipeline` exports in the background with a bounded buffer and drop counters;
* :mod:`.exporter` is the process that runs the pipeline, fed by a pipe;
* :mod:`.process` starts it and writes commits to it, from the runs' process;
* :mod:`.hook` attaches it to a store's commits;
* :mod:`.past` sends runs already in the store.

Importing this package imports no OpenTelemetry module.
"""
