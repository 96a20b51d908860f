select
    c.customer_id,
    c.customer_name,
    c.country,
    c.signup_date,
    count(o.order_id) as orders,
    coalesce(sum(o.amount) filter (where o.is_revenue), 0) as lifetime_value,
    min(o.order_date) as first_order_date,
    max(o.order_date) as last_order_date
from {{ ref('stg_customers') }} as c
left join {{ ref('fct_orders') }} as o using (customer_id)
group by all
