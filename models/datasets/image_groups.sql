-- Groups of images that must share a split: each image with every image it is a
-- (near-)duplicate of, directly or through a chain. Found by propagating the smallest path
-- along near_duplicates pairs, duplicate_group_hops times (a data test checks no pair is split).
{% set hops = int_var('duplicate_group_hops', min=0) %}
with images as (
    select path, label from {{ ref('stg_images') }} where label is not null
),
neighbours as (
    select path as path, path as other from images
    union all
    select path_a, path_b from {{ ref('near_duplicates') }}
    union all
    select path_b, path_a from {{ ref('near_duplicates') }}
),
hop0 as (
    select path, path as group_id from images
){% for i in range(1, hops + 1) %},
hop{{ i }} as (
    select n.path, min(h.group_id) as group_id
    from neighbours n
    join hop{{ i - 1 }} h on h.path = n.other
    group by n.path
){% endfor %}
select i.path, i.label, h.group_id
from images i
join hop{{ hops }} h on h.path = i.path
