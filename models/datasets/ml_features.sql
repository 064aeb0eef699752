-- Hand-crafted features as a Spark ML vector: the colour histogram as fractions of the
-- image's pixels, ready for pyspark.ml (e.g. LogisticRegression(featuresCol='features')).
{%- set image_size = int_var('image_size', min=1) %}
select
    s.path,
    s.split,
    l.label,
    cast(l.label_index as double) as label_index,
    array_to_vector(transform(f.color_histogram, x -> x / ({{ image_size }} * {{ image_size }}))) as features
from {{ ref('splits') }} s
join {{ ref('labels') }} l on l.label = s.label
join {{ ref('image_features') }} f on f.path = s.path
