-- train / val / test for every labelled image: deterministic from the seed, stratified by
-- label, and whole groups of (near-)duplicates at a time, so nothing leaks between splits.
--
-- An image keeps its split once it has one: on an incremental build the images already in
-- this table keep theirs, a new image that joins a group takes that group's split, and only
-- groups of new images are dealt; only those rows, and rows whose group changed, are written.
-- Within a label, groups are ordered by a hash of (seed, group) and dealt by how many images
-- come before them, to fill what each split still lacks of its share: round(n * train) images
-- train, up to round(n * (train + val)) validate, the rest test, n being all the label's
-- images. On a first build (or --full-refresh) nothing is kept, every group is dealt, and each
-- label's counts are within one image of the ratios when there are no duplicate groups.
{{ config(
    materialized='incremental', unique_key='path', incremental_strategy='merge',
    delete_unmatched={'in': ref('image_groups'), 'on': ['path']}
) }}
{% set ratios = split_ratios() %}
with images as (
    select g.path, g.label, g.group_id,
           {% if is_incremental() %}t.split{% else %}cast(null as string){% endif %} as kept_split,
           {% if is_incremental() %}t.group_id{% else %}cast(null as string){% endif %} as kept_group_id
    from {{ ref('image_groups') }} g
    {%- if is_incremental() %}
    left join {{ this }} t on t.path = g.path
    {%- endif %}
),
group_sizes as (
    select i.group_id, min(i.label) as label, count(*) as n_images,
           -- the split of the group's first image that has one, if any has
           min_by(i.kept_split, if(i.kept_split is null, 1, 0) || i.path) as kept_split,
           -- drawn on the path below images_path, so the same files get the same splits
           -- wherever the project and its images are
           xxhash64(cast({{ int_var('seed') }} as string), min(f.relative_path)) as draw
    from images i
    join {{ ref('stg_files') }} f on f.path = i.group_id
    group by i.group_id
),
label_targets as (
    -- how many more images each split needs for its share of the label
    select label,
           greatest(round(sum(n_images) * {{ ratios[0] }})
                    - sum(if(kept_split = 'train', n_images, 0)), 0) as train_needed,
           greatest(round(sum(n_images) * ({{ ratios[0] }} + {{ ratios[1] }})) - round(sum(n_images) * {{ ratios[0] }})
                    - sum(if(kept_split = 'val', n_images, 0)), 0) as val_needed
    from group_sizes
    group by label
),
dealt as (
    select g.group_id,
           case
               when g.kept_split is not null then g.kept_split
               when g.images_before < t.train_needed then 'train'
               when g.images_before < t.train_needed + t.val_needed then 'val'
               else 'test'
           end as split
    from (
        select *, sum(if(kept_split is null, n_images, 0)) over (
                      partition by label order by kept_split is null, draw, group_id
                      rows between unbounded preceding and current row) - if(kept_split is null, n_images, 0)
                  as images_before
        from group_sizes
    ) g
    join label_targets t on t.label = g.label
)
select
    i.path,
    i.label,
    coalesce(i.kept_split, d.split) as split,
    i.group_id
from images i
join dealt d on d.group_id = i.group_id
{%- if is_incremental() %}
-- only rows that are new or whose group changed: the table's other rows stay in their files
where i.kept_split is null or not (i.kept_group_id <=> i.group_id)
{%- endif %}
