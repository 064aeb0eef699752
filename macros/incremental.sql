{#- Incremental image tables: each row is an image version, known by (path, content_sha256). -#}

{#- delete_unmatched of a table derived from images_resized: its rows for images that were deleted
    or changed since (a changed file has a new content_sha256) are removed. stg_images holds
    (path, content_sha256) for every image of images_resized without the pixels, so the check
    reads a narrow table. -#}
{% macro image_is_gone() -%}
    {{- return({'in': ref('stg_images'), 'on': ['path', 'content_sha256']}) -}}
{%- endmacro %}

{#- On an incremental build, keep only the rows of `alias` that this table does not hold yet. -#}
{% macro only_new_images(alias) -%}
    {%- if is_incremental() %}
left anti join {{ this }} __existing
    on __existing.path = {{ alias }}.path and __existing.content_sha256 = {{ alias }}.content_sha256
    {%- endif %}
{%- endmacro %}
