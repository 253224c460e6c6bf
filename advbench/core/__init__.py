"""Infrastructure below the data: project errors, types, argument checks, atomic files and
locks, memory limits, progress, TensorFlow ops shared by attacks and defenses, lazy registries
and the source revision. Nothing here knows a data set, a model or an attack."""
