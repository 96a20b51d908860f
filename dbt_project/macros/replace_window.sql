{#
  Incremental strategy `replace_window`: a daily model's run replaces exactly the days it was asked
  for (vars min_date..max_date, see partition_filter), in one transaction. delete+insert deletes only
  the keys the new batch contains, so a day whose raw batch is now empty kept its stale rows; this
  deletes the whole window first, whatever the batch holds. `unique_key` names the date column.
#}
{% macro get_incremental_replace_window_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set day_column = arg_dict['unique_key'] -%}
    {%- if day_column is none or day_column is not string -%}
        {{ exceptions.raise_compiler_error("replace_window needs unique_key set to the model's date column, got " ~ day_column) }}
    {%- endif -%}
    {%- set dest_cols_csv = get_quoted_csv(arg_dict['dest_columns'] | map(attribute="name")) -%}
    delete from {{ target }} where {{ partition_filter(adapter.quote(day_column)) }};
    insert into {{ target }} ({{ dest_cols_csv }}) (select {{ dest_cols_csv }} from {{ source }})
{%- endmacro %}
