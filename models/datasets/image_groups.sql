-- Groups of images that must share a split: each labelled image with every image it is a
-- (near-)duplicate of, directly or through a chain of any length (a data test checks that no
-- pair is split). near_duplicates is small, so its connected components come from one
-- duplicate_groups call (union-find over all pairs) instead of a join and a shuffle per hop.
-- group_id is the smallest labelled path of the group: an unlabelled image (no split) may link
-- images, but never names a group; an image in no pair is a group of its own.
with images as (
    select path, label from {{ ref('stg_images') }} where label is not null
),
pairs as (
    select collect_list(named_struct('a', path_a, 'b', path_b)) as pairs from {{ ref('near_duplicates') }}
),
components as (
    select c.path, c.group_id as component
    from pairs
    lateral view inline(duplicate_groups(pairs)) c
),
groups as (
    select c.path, min(c.path) over (partition by c.component) as group_id
    from components c
    join images i on i.path = c.path
)
select i.path, i.label, coalesce(g.group_id, i.path) as group_id
from images i
left join groups g on g.path = i.path
