{{ config(materialized='incremental', incremental_strategy='replace_window', unique_key='order_date',
          tags=['daily']) }}

with payments as (
    select order_id, sum(amount) as paid_amount, count(*) as payment_count
    from {{ ref('stg_payments') }}
    where {{ partition_filter('payment_date') }}
    group by order_id
)

select
    o.order_id,
    o.customer_id,
    o.order_date,
    o.ordered_at,
    o.status,
    o.amount,
    coalesce(p.paid_amount, 0) as paid_amount,
    coalesce(p.payment_count, 0) as payment_count,
    o.status in ('shipped', 'completed') as is_revenue
from {{ ref('stg_orders') }} as o
left join payments as p using (order_id)
where {{ partition_filter('o.order_date') }}
