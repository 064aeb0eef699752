{#- Helpers for the training sets. -#}

{#- The split ratios as (train, val, test), checked once so every model agrees. -#}
{% macro split_ratios() -%}
    {%- set ratios = var('split') -%}
    {%- if ratios | length != 3 or (ratios | sum - 1) | abs > 0.000001 -%}
        {{ exceptions.raise_compiler_error("var split must be three ratios (train, val, test) that sum to 1, got " ~ ratios) }}
    {%- endif -%}
    {{ return(ratios) }}
{%- endmacro %}

{#- One-hot encoding of a 0-based index: an array of n_labels 0/1 integers. -#}
{% macro one_hot(index, n_labels) -%}
    transform(sequence(0, {{ n_labels }} - 1), i -> if(i = {{ index }}, 1, 0))
{%- endmacro %}

{#- The rows of one training split: original images (copy_index 0) with labels, tensors and
    features; augmented copies are added to the train split only. -#}
{% macro training_rows(split_name, with_augmented=false) -%}
with label_count as (
    select count(*) as n_labels from {{ ref('labels') }}
),
originals as (
    select r.path, s.label, 0 as copy_index, r.image, f.color_histogram
    from {{ ref('images_resized') }} r
    join {{ ref('splits') }} s on s.path = r.path
    join {{ ref('image_features') }} f on f.path = r.path
    where s.split = '{{ split_name }}'
),
{%- if with_augmented %}
augmented as (
    select a.path, s.label, a.copy_index, a.image,
           color_histogram(a.image, {{ var('histogram_bins') }}) as color_histogram
    from {{ ref('images_augmented') }} a
    join {{ ref('splits') }} s on s.path = a.path
),
{%- endif %}
rows as (
    select * from originals
    {%- if with_augmented %}
    union all
    select * from augmented
    {%- endif %}
)
select
    rows.path,
    rows.label,
    l.label_index,
    {{ one_hot('l.label_index', 'c.n_labels') }} as label_onehot,
    rows.copy_index,
    normalize(rows.image, '{{ var("normalization") }}') as tensor,
    tensor_shape(rows.image) as tensor_shape,
    rows.color_histogram
from rows
join {{ ref('labels') }} l on l.label = rows.label
cross join label_count c
{%- endmacro %}
