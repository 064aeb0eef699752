{#- Vars with a type. Each returns var(name) as it is, after checking it, so a wrong value (say
    --vars '{"image_size": "big"}') stops the build with the var's name and what it should be,
    instead of Spark rejecting the SQL it would have made. `default`: as var(name, default);
    none means the var must be set. --vars is YAML: 128 and true are a number and a boolean,
    "128" and "true" are strings. -#}

{#- A whole number (not true/false), within min..max when they are given. -#}
{% macro int_var(name, default=none, min=none, max=none) -%}
    {%- set value = var(name) if default is none else var(name, default) -%}
    {%- set ok = value is integer and (min is none or value >= min) and (max is none or value <= max) -%}
    {{- _check_var(name, value, ok, 'a whole number' ~ _bounds(min, max)) -}}
    {{- return(value) -}}
{%- endmacro %}

{#- One of `choices`; ignore_case for values that the functions using them read in any case. -#}
{% macro choice_var(name, choices, default=none, ignore_case=false) -%}
    {%- set value = var(name) if default is none else var(name, default) -%}
    {%- set key = value | lower if ignore_case and value is string else value -%}
    {{- _check_var(name, value, key in choices, 'one of ' ~ choices | join(', ')) -}}
    {{- return(value) -}}
{%- endmacro %}

{#- true or false: YAML's booleans, not the strings 'true' and 'false'. -#}
{% macro bool_var(name, default=none) -%}
    {%- set value = var(name) if default is none else var(name, default) -%}
    {{- _check_var(name, value, value is boolean, 'true or false') -}}
    {{- return(value) -}}
{%- endmacro %}

{#- A string (in --vars, quote one that YAML would read as a number or a boolean). -#}
{% macro string_var(name, default=none) -%}
    {%- set value = var(name) if default is none else var(name, default) -%}
    {{- _check_var(name, value, value is string, 'a string') -}}
    {{- return(value) -}}
{%- endmacro %}

{#- Helpers of the macros above (private: no return(), which only public macros hand back). -#}
{#- Stops the build unless `ok`, saying what the var must be and what it is. -#}
{%- macro _check_var(name, value, ok, expected) -%}
    {%- if not ok -%}
        {{- exceptions.raise_compiler_error("var '" ~ name ~ "' must be " ~ expected ~ ", got " ~ _shown(value)) -}}
    {%- endif -%}
{%- endmacro %}

{%- macro _bounds(min, max) -%}
    {%- if min is not none and max is not none %} from {{ min }} to {{ max }}
    {%- elif min is not none %} of at least {{ min }}
    {%- elif max is not none %} of at most {{ max }}
    {%- endif -%}
{%- endmacro %}

{%- macro _shown(value) -%}
    {%- if value is string -%} '{{ value }}' (a string)
    {%- elif value is boolean -%} {{ value | string | lower }}
    {%- elif value is none -%} null
    {%- else -%} {{ value }}
    {%- endif -%}
{%- endmacro %}
