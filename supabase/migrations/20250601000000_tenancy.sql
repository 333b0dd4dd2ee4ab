-- CleanMateX core tenancy: tenants, their branches and the people who work there.
-- Every tenant-owned table carries tenant_id; child tables reference parents through
-- (tenant_id, id) so a row can never point at another tenant's data.
-- Deleting a tenant cascades to all its rows. References between a tenant's own rows that do not
-- cascade (an order's customer, an item's service, ...) are checked at commit (deferred), so the
-- cascade can remove them in any order while deleting a referenced row on its own still fails.
-- No extension needed: gen_random_uuid() is built into PostgreSQL 13+. Functions pin
-- search_path = '' and qualify every name (Supabase's database linter asks for that).

-- Shared trigger function: keep updated_at current on every UPDATE.
create or replace function public.set_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end;
$$;

create type public.user_role as enum ('owner', 'admin', 'manager', 'staff', 'driver');

create table public.tenants (
  id          uuid primary key default gen_random_uuid(),
  slug        text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
  name        text not null check (length(btrim(name)) > 0),
  currency    char(3) not null default 'USD' check (currency ~ '^[A-Z]{3}$'),
  timezone    text not null default 'UTC',
  is_active   boolean not null default true,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);

create table public.branches (
  id          uuid primary key default gen_random_uuid(),
  tenant_id   uuid not null references public.tenants (id) on delete cascade,
  code        text not null check (code ~ '^[A-Z0-9-]{1,16}$'),
  name        text not null check (length(btrim(name)) > 0),
  address     text,
  phone       text,
  is_active   boolean not null default true,
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now(),
  unique (tenant_id, code),
  unique (tenant_id, id)
);

-- Application users of a tenant. auth_user_id links to Supabase Auth (auth.users.id) when the
-- user signs in through it; no foreign key because the auth schema is not part of every stack.
create table public.users (
  id            uuid primary key default gen_random_uuid(),
  tenant_id     uuid not null references public.tenants (id) on delete cascade,
  auth_user_id  uuid unique,
  email         text not null check (email ~ '^[^@\s]+@[^@\s]+$'),
  full_name     text not null,
  role          public.user_role not null default 'staff',
  branch_id     uuid,
  is_active     boolean not null default true,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  unique (tenant_id, id),
  foreign key (tenant_id, branch_id) references public.branches (tenant_id, id)
    deferrable initially deferred
);

create unique index users_tenant_email_key on public.users (tenant_id, lower(email));
create index users_branch_idx on public.users (tenant_id, branch_id);

create trigger tenants_set_updated_at before update on public.tenants
  for each row execute function public.set_updated_at();
create trigger branches_set_updated_at before update on public.branches
  for each row execute function public.set_updated_at();
create trigger users_set_updated_at before update on public.users
  for each row execute function public.set_updated_at();
