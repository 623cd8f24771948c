//! Rust types: what every schema becomes — a scalar, a container, or a named
//! struct, string enum or untagged union — and the builder that names the
//! inline ones, in document order, so names are stable from run to run.

use anyhow::{Context, Result};
use indexmap::IndexMap;
use serde_json::Value;

use super::names::{field_name, pointer_segment, type_name};
use super::schema::{AdditionalProperties, JsonType, Resolver, Schema, SchemaNode};

/// A Rust type a schema maps to.
#[derive(Debug, Clone, PartialEq)]
pub enum RustType {
    /// A generated type (struct, enum or union), by its Rust name.
    Named(String),
    String,
    Password,
    Date,
    DateTime,
    Uuid,
    I32,
    I64,
    F32,
    F64,
    Bool,
    Vec(Box<RustType>),
    Map(Box<RustType>),
    JsonObject,
    Any,
    /// `{enum: [null]}`: only `null` (dropshot's empty body), Rust's `()`.
    Unit,
    /// A body that is not JSON (`application/octet-stream`, `image/png`):
    /// its bytes as they are.
    Bytes,
    /// A file part of a `multipart/form-data` body (`rt::FilePart`).
    File,
    /// An `If-Match` header of an operation documenting 412
    /// (`rt::etag::IfMatch`; see [`super::conditional`]).
    IfMatch,
}

/// One generated struct field.
#[derive(Debug, Clone)]
pub struct Field {
    pub json_name: String,
    pub rust_name: String,
    pub ty: RustType,
    pub required: bool,
    pub nullable: bool,
    pub default: Option<Value>,
    /// The property's schema as written (a reference stays a reference, so
    /// the served document matches the contract).
    pub schema: Schema,
    /// The same schema resolved, for validation rules and shapes.
    pub node: SchemaNode,
    pub description: Option<String>,
    /// Held in a `Box`: the field leads back to its own struct
    /// ([`super::recursion`]).
    pub boxed: bool,
    /// The properties beside the declared ones (`additionalProperties:
    /// {schema}` next to `properties`): a map, `#[serde(flatten)]`.
    pub flatten: bool,
}

/// How many `Option`s wrap a field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optionality {
    Plain,
    /// Required but nullable, or optional without default.
    Option,
    /// Optional and nullable: absent and `null` differ.
    DoubleOption,
}

impl Field {
    /// A `multipart/form-data` file part, or a list of them.
    pub fn is_file(&self) -> bool {
        match &self.ty {
            RustType::File => true,
            RustType::Vec(i) => **i == RustType::File,
            _ => false,
        }
    }

    pub fn optionality(&self) -> Optionality {
        // A required readOnly property is absent from requests, a required
        // writeOnly one from responses: an Option in Rust for a type used
        // both ways (the checks of each direction demand it where required).
        let required = self.required && !self.node.read_only && !self.node.write_only;
        match (required, self.nullable, self.default.is_some()) {
            (true, false, _) => Optionality::Plain,
            (true, true, _) => Optionality::Option,
            (false, false, true) => Optionality::Plain,
            (false, false, false) => Optionality::Option,
            (false, true, _) => Optionality::DoubleOption,
        }
    }
}

/// A variant of a string enum.
#[derive(Debug, Clone)]
pub struct EnumVariant {
    pub rust_name: String,
    /// The value on the wire.
    pub wire: String,
}

/// A member of a `oneOf`/`anyOf`, as a variant of an untagged enum.
#[derive(Debug, Clone)]
pub struct UnionVariant {
    pub rust_name: String,
    pub ty: RustType,
    pub schema: Schema,
    /// For a `oneOf` without discriminator: what selects this member
    /// ([`super::unions`]).
    pub signature: Option<super::unions::Signature>,
}

#[derive(Debug, Clone)]
pub enum TypeKind {
    Struct(Vec<Field>),
    StrEnum(Vec<EnumVariant>),
    Union(Vec<UnionVariant>),
    /// A request body that is not an object or a union (an array, a
    /// scalar, an enum): `pub struct X(pub T)`, serialized as `T` is, so it
    /// can carry the validation of a top-level value.
    Newtype(Box<Field>),
}

/// One generated Rust type.
#[derive(Debug, Clone)]
pub struct TypeDef {
    pub rust_name: String,
    /// The component name when this type is `#/components/schemas/<name>`;
    /// otherwise it is emitted inline in the document.
    pub component: Option<String>,
    pub kind: TypeKind,
    pub node: SchemaNode,
}

/// Identical string enums share one type; a `title` names it, and only
/// enums with the same title share.
#[derive(Debug, PartialEq)]
struct EnumKey {
    title: Option<String>,
    values: Vec<String>,
}

struct SharedEnum {
    key: EnumKey,
    rust_name: String,
}

/// Turns schemas into Rust types, collecting every named type it creates.
pub struct TypeBuilder<'a> {
    pub resolver: Resolver<'a>,
    /// Every generated type by Rust name, in creation order.
    pub types: IndexMap<String, TypeDef>,
    /// String enums created so far, for reuse; the first match wins.
    enums: Vec<SharedEnum>,
    /// Component name → Rust name.
    components: IndexMap<String, String>,
    /// Components that are a scalar, an array or a map: component name →
    /// the Rust type a reference to them stands for.
    pub value_aliases: IndexMap<String, ValueAlias>,
    /// Names no generated type may take: the operations' result types.
    pub reserved: Vec<String>,
}

/// A component that is not an object, enum or union (`Id: {type: string,
/// format: uuid}`): in Rust a `type` alias of what it holds, in the served
/// document its own named schema, and its constraints apply wherever it is
/// referenced.
#[derive(Debug, Clone)]
pub struct ValueAlias {
    /// The Rust name of the alias.
    pub rust_name: String,
    pub rust_type: RustType,
    pub node: SchemaNode,
}

impl<'a> TypeBuilder<'a> {
    pub fn new(resolver: Resolver<'a>) -> Self {
        Self {
            resolver,
            types: IndexMap::new(),
            enums: Vec::new(),
            components: IndexMap::new(),
            value_aliases: IndexMap::new(),
            reserved: Vec::new(),
        }
    }

    /// `base`, or `base2`, `base3`… when a type or component already has it.
    pub fn unique_name(&self, base: String) -> String {
        let taken = |n: &str| {
            self.types.contains_key(n)
                || self.components.values().any(|v| v == n)
                || self.reserved.iter().any(|r| r == n)
        };
        if !taken(&base) {
            return base;
        }
        (2..).map(|i| format!("{base}{i}")).find(|n| !taken(n)).unwrap_or(base)
    }

    /// The Rust type of `schema`; inline objects, enums and unions become
    /// named types called `hint` (or the name of their `title`). `prop` is
    /// the property name, which names an untitled enum when it is free.
    pub fn rust_type(&mut self, schema: &Schema, hint: &str, prop: Option<&str>) -> Result<RustType> {
        let node = match schema {
            Schema::Ref(name) => {
                let canon = self.resolver.canonical(name)?;
                let rust = self.component(&canon)?;
                return Ok(match self.value_aliases.get(&canon) {
                    Some(a) => a.rust_type.clone(),
                    None => RustType::Named(rust),
                });
            }
            Schema::Inline(n) => n.as_ref(),
        };
        if let Some(name) = &node.ref_of {
            return self.rust_type(&Schema::Ref(name.clone()), hint, prop);
        }
        if !node.one_of.is_empty() || !node.any_of.is_empty() {
            let name = self.unique_name(node.title.as_deref().map_or_else(|| hint.to_owned(), type_name));
            self.union(node, &name, None)?;
            return Ok(RustType::Named(name));
        }
        Ok(match node.ty {
            _ if node.enum_values == [Value::Null] => RustType::Unit,
            None => RustType::Any,
            Some(JsonType::Boolean) => RustType::Bool,
            Some(JsonType::Integer) => match node.format.as_deref() {
                Some("int32") => RustType::I32,
                _ => RustType::I64,
            },
            Some(JsonType::Number) => match node.format.as_deref() {
                Some("float") => RustType::F32,
                _ => RustType::F64,
            },
            Some(JsonType::String) if !node.enum_values.is_empty() => {
                RustType::Named(self.inline_enum(node, hint, prop)?)
            }
            Some(JsonType::String) => match node.format.as_deref() {
                Some("date") => RustType::Date,
                Some("date-time") => RustType::DateTime,
                Some("uuid") => RustType::Uuid,
                Some("password") => RustType::Password,
                _ => RustType::String,
            },
            Some(JsonType::Array) => {
                let items = node.items.as_ref().context("array without items")?;
                RustType::Vec(Box::new(self.rust_type(items, &format!("{hint}Item"), None)?))
            }
            Some(JsonType::Object)
                if node.properties.is_empty()
                    && node.additional_properties != Some(AdditionalProperties::Forbidden) =>
            {
                match &node.additional_properties {
                    Some(AdditionalProperties::Schema(v)) => {
                        RustType::Map(Box::new(self.map_value(v, &format!("{hint}Value"))?))
                    }
                    _ => RustType::JsonObject,
                }
            }
            Some(JsonType::Object) => {
                let name = self.unique_name(node.title.as_deref().map_or_else(|| hint.to_owned(), type_name));
                self.object(node, &name, None)?;
                RustType::Named(name)
            }
        })
    }

    /// The Rust type of a map's values. garde checks a map's values only
    /// by diving into them, so a value with constraints of its own (a
    /// length, pattern, range, format, item count) becomes a newtype
    /// carrying them (`serde(transparent)`: the JSON is unchanged).
    fn map_value(&mut self, schema: &Schema, hint: &str) -> Result<RustType> {
        let ty = self.rust_type(schema, hint, None)?;
        let n = self.resolver.resolve(schema)?;
        let own = |n: &SchemaNode| {
            n.min_length.is_some()
                || n.max_length.is_some()
                || n.pattern.is_some()
                || n.minimum.is_some()
                || n.maximum.is_some()
                || n.multiple_of.is_some()
                || n.min_items.is_some()
                || n.max_items.is_some()
                || n.unique_items
                || matches!(n.format.as_deref(), Some("email" | "uri" | "ipv4" | "ipv6" | "hostname" | "byte"))
        };
        // An array's items' constraints are the newtype's `inner` rules.
        let items_constrained = match &n.items {
            Some(i) => own(&self.resolver.resolve(i)?),
            None => false,
        };
        let constrained = own(&n) || items_constrained;
        if matches!(ty, RustType::Named(_)) || !constrained {
            return Ok(ty);
        }
        let name = self.unique_name(hint.to_owned());
        let mut field = self.field("", schema, true, &name)?;
        field.rust_name = "0".into();
        self.synthetic_newtype(&name, field, n);
        Ok(RustType::Named(name))
    }

    fn inline_enum(&mut self, node: &SchemaNode, hint: &str, prop: Option<&str>) -> Result<String> {
        let values = enum_strings(node);
        let key = EnumKey { title: node.title.clone(), values: values.clone() };
        if let Some(existing) = self.enums.iter().find(|e| e.key == key) {
            return Ok(existing.rust_name.clone());
        }
        let base = match (&node.title, prop) {
            (Some(t), _) => type_name(t),
            (None, Some(p)) if !self.types.contains_key(&type_name(p)) => type_name(p),
            _ => hint.to_owned(),
        };
        let name = self.unique_name(base);
        self.enums.push(SharedEnum { key, rust_name: name.clone() });
        self.str_enum(node, &name, None, &values);
        Ok(name)
    }

    /// The Rust name of component `name`, generating its type on first use.
    pub fn component(&mut self, name: &str) -> Result<String> {
        if let Some(r) = self.components.get(name) {
            return Ok(r.clone());
        }
        // A schema named like an operation's result type yields: the
        // handler's return type never depends on which schemas exist.
        let base = type_name(name);
        let base = if self.reserved.contains(&base) { format!("{base}Body") } else { base };
        let rust = self.unique_name(base);
        self.components.insert(name.to_owned(), rust.clone());
        let pointer = format!("#/components/schemas/{}", pointer_segment(name));
        let schema = self.resolver.convert(self.resolver.component(name)?, &pointer)?;
        let node = self.resolver.resolve(&schema)?;
        if !node.one_of.is_empty() || !node.any_of.is_empty() {
            self.union(&node, &rust, Some(name))?;
        } else if node.ty == Some(JsonType::String) && !node.enum_values.is_empty() {
            let values = enum_strings(&node);
            self.enums
                .push(SharedEnum { key: EnumKey { title: None, values: values.clone() }, rust_name: rust.clone() });
            self.str_enum(&node, &rust, Some(name), &values);
        } else if node.ty == Some(JsonType::Object) && !node.properties.is_empty() {
            self.object(&node, &rust, Some(name))?;
        } else {
            // A scalar, array or map: a `type` alias in Rust (a newtype
            // would only add wrapping), its own schema in the document.
            let inner = Schema::Inline(Box::new(node.clone()));
            let rust_type = self.rust_type(&inner, &format!("{rust}Item"), None)?;
            self.value_aliases.insert(name.to_owned(), ValueAlias { rust_name: rust.clone(), rust_type, node });
        }
        Ok(rust)
    }

    fn insert(&mut self, name: &str, component: Option<&str>, kind: TypeKind, node: &SchemaNode) {
        self.types.insert(
            name.to_owned(),
            TypeDef { rust_name: name.to_owned(), component: component.map(str::to_owned), kind, node: node.clone() },
        );
    }

    fn str_enum(&mut self, node: &SchemaNode, name: &str, component: Option<&str>, values: &[String]) {
        let mut variants: Vec<EnumVariant> = Vec::new();
        for v in values {
            let mut rust_name = type_name(v);
            while variants.iter().any(|e| e.rust_name == rust_name) {
                rust_name.push('_');
            }
            variants.push(EnumVariant { rust_name, wire: v.clone() });
        }
        self.insert(name, component, TypeKind::StrEnum(variants), node);
    }

    fn union(&mut self, node: &SchemaNode, name: &str, component: Option<&str>) -> Result<()> {
        // Reserve the name before recursing so nested names stay stable.
        self.insert(name, component, TypeKind::Union(vec![]), node);
        let members = if node.one_of.is_empty() { &node.any_of } else { &node.one_of };
        let signatures = if !node.one_of.is_empty() && node.discriminator.is_none() {
            let sigs =
                members.iter().map(|m| super::unions::signature(&self.resolver, m)).collect::<Result<Vec<_>>>()?;
            super::unions::check_exclusive(&node.pointer, &sigs)?;
            Some(sigs)
        } else {
            None
        };
        // Members an implicit tag names are named by it (`Volume`, `Url`).
        let tag_names = signatures.as_deref().and_then(super::unions::implicit_tag).map(|(_, vs)| vs);
        let mut variants: Vec<UnionVariant> = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let tag = tag_names.as_ref().map(|vs| type_name(&vs[i]));
            let hint = match &tag {
                Some(t) => format!("{name}{t}"),
                None => format!("{name}V{}", i + 1),
            };
            let ty = self.rust_type(m, &hint, None)?;
            let rust_name = match &ty {
                _ if tag.is_some() && matches!(m, Schema::Inline(n) if n.ref_of.is_none()) => {
                    tag.clone().unwrap_or_default()
                }
                RustType::Named(n) => n.clone(),
                RustType::String => "String".into(),
                RustType::I64 | RustType::I32 => "Integer".into(),
                RustType::F64 | RustType::F32 => "Number".into(),
                RustType::Bool => "Bool".into(),
                RustType::Vec(_) => "Array".into(),
                _ => format!("V{}", i + 1),
            };
            let rust_name = if variants.iter().any(|v| v.rust_name == rust_name) {
                format!("{rust_name}{}", i + 1)
            } else {
                rust_name
            };
            let signature = signatures.as_ref().map(|s| s[i].clone());
            variants.push(UnionVariant { rust_name, ty, schema: m.clone(), signature });
        }
        if let Some(t) = self.types.get_mut(name) {
            t.kind = TypeKind::Union(variants);
        }
        Ok(())
    }

    fn object(&mut self, node: &SchemaNode, name: &str, component: Option<&str>) -> Result<()> {
        // Reserve the name before recursing, as for unions.
        self.insert(name, component, TypeKind::Struct(vec![]), node);
        let mut fields: Vec<Field> = Vec::new();
        for p in &node.properties {
            let mut f = self.field(&p.name, &p.schema, node.required.contains(&p.name), name)?;
            // `fooBar` and `foo_bar` are both `foo_bar` in Rust: number the later.
            let base = f.rust_name.clone();
            let mut n = 2;
            while fields.iter().any(|o| o.rust_name == f.rust_name) {
                f.rust_name = format!("{}_{n}", base.trim_end_matches('_'));
                n += 1;
            }
            fields.push(f);
        }
        if let Some(AdditionalProperties::Schema(rest)) = &node.additional_properties {
            let item = self.map_value(rest, &format!("{name}Value"))?;
            let mut rust_name = "additional_properties".to_owned();
            while fields.iter().any(|f| f.rust_name == rust_name) {
                rust_name.push('_');
            }
            let item_node = self.resolver.resolve(rest)?;
            fields.push(Field {
                json_name: rust_name.clone(),
                rust_name,
                ty: RustType::Map(Box::new(item)),
                required: true,
                nullable: false,
                default: None,
                schema: rest.clone(),
                node: SchemaNode {
                    pointer: format!("{}/additionalProperties", node.pointer),
                    additional_properties: Some(AdditionalProperties::Schema(Schema::Inline(Box::new(item_node)))),
                    ..SchemaNode::default()
                },
                description: None,
                boxed: false,
                flatten: true,
            });
        }
        if let Some(t) = self.types.get_mut(name) {
            t.kind = TypeKind::Struct(fields);
        }
        Ok(())
    }

    /// A field of struct `parent`; inline types it needs are named after it.
    pub fn field(&mut self, json: &str, schema: &Schema, required: bool, parent: &str) -> Result<Field> {
        let ty = self.rust_type(schema, &format!("{parent}{}", type_name(json)), Some(json))?;
        let node = self.resolver.resolve(schema)?;
        let default = match schema {
            Schema::Inline(n) => n.default.clone(),
            Schema::Ref(_) => None,
        };
        Ok(Field {
            json_name: json.to_owned(),
            rust_name: field_name(json),
            ty,
            required,
            nullable: node.nullable,
            default,
            description: node.description.clone(),
            schema: schema.clone(),
            node,
            boxed: false,
            flatten: false,
        })
    }

    /// Registers a newtype the generator makes up (a request body that is
    /// not an object), over the body's own schema.
    pub fn synthetic_newtype(&mut self, name: &str, field: Field, node: SchemaNode) {
        self.insert(name, None, TypeKind::Newtype(Box::new(field)), &node);
    }

    /// Registers a struct the generator makes up (an operation's parameters).
    pub fn synthetic_struct(&mut self, name: &str, fields: Vec<Field>, node: SchemaNode) {
        self.insert(name, None, TypeKind::Struct(fields), &node);
    }
}

fn enum_strings(node: &SchemaNode) -> Vec<String> {
    node.enum_values.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect()
}
