{#- Helpers for the training sets. -#}

{#- The split ratios as (train, val, test), checked once so every model agrees. -#}
{% macro split_ratios() -%}
    {%- set ratios = var('split') -%}
    {%- set three_numbers = ratios is sequence and ratios is not string and ratios is not mapping
                            and ratios | length == 3 and ratios | select('boolean') | list | length == 0
                            and ratios | reject('number') | list | length == 0 -%}
    {%- if not three_numbers or ratios | min < 0 or (ratios | sum - 1) | abs > 0.000001 -%}
        {{ exceptions.raise_compiler_error("var 'split' must be three ratios (train, val, test) of at least 0 "
                                           ~ "that sum to 1, e.g. [0.7, 0.15, 0.15], got " ~ ratios) }}
    {%- endif -%}
    {{ return(ratios) }}
{%- endmacro %}

{#- One-hot encoding of a 0-based index: an array of n_labels 0/1 integers. -#}
{% macro one_hot(index, n_labels) -%}
    transform(sequence(0, {{ n_labels }} - 1), i -> if(i = {{ index }}, 1, 0))
{%- endmacro %}

{#- The rows of one training split: original images (copy_index 0) with labels, the uint8 image
    and its colour histogram; augmented copies are added to the train split only. The table holds
    images, not tensors: how to make the tensor (var normalization) is recorded with the table
    (meta.normalization: in manifest.json, the catalog and each Parquet file's schema), and
    imageprep.training applies it when it reads a batch, as SQL's normalize(image, ...) would. With
    var store_tensors the float32 tensor is stored as well (column tensor, with tensor_shape).
    Incremental: a build reads only images that are new or changed (an image keeps its split), and
    removes the rows of images that left the split (a changed image's rows are replaced: same key).
    No anti-join on the set itself: the rather rare rows new_rows() gives again (a gathered file
    upstream) are copied again and replace themselves, where the anti-join would read the key
    columns of every row of the set on every build.
    A new label moves the label indices after it, so a change in the label encoding rebuilds the
    set in full (full_refresh_when). -#}
{% macro training_rows(split_name, with_augmented=false) -%}
{%- set this_set = this -%}
{%- set normalization = choice_var('normalization', ['zero_one', 'minus_one_one', 'standard', 'imagenet']) -%}
{{ config(
    materialized='incremental', unique_key=['path', 'copy_index'], incremental_strategy='merge',
    delete_unmatched={'in': ref('splits'), 'on': ['path'], 'where': {'split': split_name}},
    full_refresh_when="exists (select label, label_index, size(label_onehot) from " ~ this_set
                      ~ " except select label, label_index, count(*) over () from " ~ ref('labels') ~ ")",
    meta={'normalization': {'column': 'image', 'method': normalization, 'layout': 'CHW'}}
) }}
with label_count as (
    select count(*) as n_labels from {{ ref('labels') }}
),
originals as (
    select r.path, r.content_sha256, s.label, 0 as copy_index, r.image, r.color_histogram
    from {{ new_rows(ref('images_resized')) }} r
    join {{ ref('splits') }} s on s.path = r.path
    where s.split = '{{ split_name }}'
),
{%- if with_augmented %}
augmented as (
    select a.path, a.content_sha256, s.label, a.copy_index, a.image, a.color_histogram
    from {{ new_rows(ref('images_augmented')) }} a
    join {{ ref('splits') }} s on s.path = a.path
),
{%- endif %}
rows as (
    select * from originals
    {%- if with_augmented %}
    union all
    select * from augmented
    {%- endif %}
),
labelled as (
    select rows.*, l.label_index, c.n_labels
    from rows
    join {{ ref('labels') }} l on l.label = rows.label
    cross join label_count c
)
select
    path,
    content_sha256,
    label,
    label_index,
    {{ one_hot('label_index', 'n_labels') }} as label_onehot,
    copy_index,
    image,
    {%- if bool_var('store_tensors', default=false) %}
    normalize(image, '{{ normalization }}') as tensor,
    tensor_shape(image) as tensor_shape,
    {%- endif %}
    color_histogram
from labelled
{%- endmacro %}
