-- train / val / test for every labelled image: deterministic from the seed, stratified by
-- label, and whole groups of (near-)duplicates at a time, so nothing leaks between splits.
-- Within a label, groups are ordered by a hash of (seed, group) and dealt out by how many
-- images come before them: the first round(n * train) images train, up to
-- round(n * (train + val)) validate, the rest test. With no duplicate groups each label's
-- counts are within one image of the ratios.
{% set ratios = split_ratios() %}
with group_sizes as (
    select group_id, min(label) as label, count(*) as n_images,
           xxhash64(cast({{ var('seed') }} as string), group_id) as draw
    from {{ ref('image_groups') }}
    group by group_id
),
dealt as (
    select group_id, label,
           sum(n_images) over (partition by label order by draw, group_id
                               rows between unbounded preceding and current row) - n_images as images_before,
           sum(n_images) over (partition by label) as label_images
    from group_sizes
)
select
    g.path,
    g.label,
    case
        when d.images_before < round(d.label_images * {{ ratios[0] }}) then 'train'
        when d.images_before < round(d.label_images * ({{ ratios[0] }} + {{ ratios[1] }})) then 'val'
        else 'test'
    end as split,
    g.group_id
from {{ ref('image_groups') }} g
join dealt d on d.group_id = g.group_id
