//! Schemas: `openapiv3` schemas become one plain tree ([`Schema`]), with
//! `allOf` flattened and every reference checked, so that the rest of the
//! generator never sees the many spellings OpenAPI allows for the same thing.

use anyhow::{Context, Result, bail};
use openapiv3 as oa;
use serde_json::Value;

use super::names::pointer_segment;

/// A schema: a reference to a component, or an inline node.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    Ref(String),
    Inline(Box<SchemaNode>),
}

/// A schema's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
}

impl JsonType {
    /// As the spec spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Array => "array",
            Self::Object => "object",
        }
    }
}

/// One inline schema with the constraints the generator understands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchemaNode {
    /// JSON pointer into the spec, for error messages.
    pub pointer: String,
    /// `discriminator` of a oneOf/anyOf: the property naming the member,
    /// and each value with the component it selects (explicit mapping,
    /// else each `$ref` member by its component name).
    pub discriminator: Option<Discriminator>,
    /// `None` for a schema without `type` (any value, or a union).
    pub ty: Option<JsonType>,
    pub format: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// `externalDocs`: its URL and description (documentation only).
    pub external_docs: Option<(String, Option<String>)>,
    pub default: Option<Value>,
    pub example: Option<Value>,
    pub enum_values: Vec<Value>,
    pub nullable: bool,
    pub read_only: bool,
    pub write_only: bool,
    pub deprecated: bool,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub pattern: Option<String>,
    /// `pattern` in the `regex` crate's dialect ([`super::patterns`]).
    pub pattern_rust: Option<String>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: bool,
    pub exclusive_maximum: bool,
    pub multiple_of: Option<f64>,
    pub min_items: Option<usize>,
    pub min_properties: Option<usize>,
    pub max_properties: Option<usize>,
    pub max_items: Option<usize>,
    pub unique_items: bool,
    pub items: Option<Schema>,
    pub properties: Vec<Property>,
    pub required: Vec<String>,
    /// `None` when the keyword is absent.
    pub additional_properties: Option<AdditionalProperties>,
    pub one_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    /// `allOf: [$ref]` to an object or union component, the idiom for
    /// annotating a reference (`nullable`, a description): the component's
    /// type, with this node's annotations. Kept as a reference rather than
    /// flattened, so a schema can contain itself this way (a tree's
    /// optional parent) and the component keeps one Rust type.
    pub ref_of: Option<String>,
}

/// One property of an object schema, in the spec's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: String,
    pub schema: Schema,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Discriminator {
    pub property: String,
    /// (value, component name), in the order of the members.
    pub mapping: Vec<(String, String)>,
    /// The mapping as the spec writes it (served as is).
    pub explicit: Vec<(String, String)>,
}

/// What `additionalProperties` allows.
#[derive(Debug, Clone, PartialEq)]
pub enum AdditionalProperties {
    /// `additionalProperties: true`.
    Any,
    Schema(Schema),
    /// `additionalProperties: false` beside properties: unknown properties
    /// are a validation failure.
    Forbidden,
}

/// Resolves component references against one document.
pub struct Resolver<'a> {
    pub doc: &'a oa::OpenAPI,
    /// Components being resolved right now: resolving one again means a
    /// schema that contains itself through `allOf`, which flattening
    /// cannot finish.
    resolving: std::cell::RefCell<Vec<String>>,
}

impl<'a> Resolver<'a> {
    pub fn new(doc: &'a oa::OpenAPI) -> Self {
        Self { doc, resolving: std::cell::RefCell::new(Vec::new()) }
    }

    fn component_name(reference: &str, pointer: &str) -> Result<String> {
        match reference.strip_prefix("#/components/schemas/") {
            Some(name) if !name.contains('/') => Ok(name.to_owned()),
            _ => bail!("{pointer}: unsupported $ref {reference:?} (only #/components/schemas/<name>)"),
        }
    }

    /// The raw component schema called `name`.
    pub fn component(&self, name: &str) -> Result<&'a oa::ReferenceOr<oa::Schema>> {
        self.doc
            .components
            .as_ref()
            .and_then(|c| c.schemas.get(name))
            .with_context(|| format!("#/components/schemas/{}: referenced but not defined", pointer_segment(name)))
    }

    pub fn convert(&self, s: &oa::ReferenceOr<oa::Schema>, pointer: &str) -> Result<Schema> {
        match s {
            oa::ReferenceOr::Reference { reference } => {
                let name = Self::component_name(reference, pointer)?;
                self.component(&name)?;
                Ok(Schema::Ref(name))
            }
            oa::ReferenceOr::Item(schema) => Ok(Schema::Inline(Box::new(self.node(schema, pointer)?))),
        }
    }

    pub fn convert_boxed(&self, s: &oa::ReferenceOr<Box<oa::Schema>>, pointer: &str) -> Result<Schema> {
        match s {
            oa::ReferenceOr::Reference { reference } => {
                let name = Self::component_name(reference, pointer)?;
                self.component(&name)?;
                Ok(Schema::Ref(name))
            }
            oa::ReferenceOr::Item(schema) => Ok(Schema::Inline(Box::new(self.node(schema, pointer)?))),
        }
    }

    /// The node a schema stands for, following references (through chains of
    /// components that are themselves references).
    pub fn resolve(&self, s: &Schema) -> Result<SchemaNode> {
        let mut seen = Vec::new();
        let mut cur = s.clone();
        loop {
            match cur {
                Schema::Inline(n) => return Ok(*n),
                Schema::Ref(name) => {
                    if seen.contains(&name) {
                        bail!("#/components/schemas/{}: $ref cycle", pointer_segment(&name));
                    }
                    let pointer = format!("#/components/schemas/{}", pointer_segment(&name));
                    if self.resolving.borrow().contains(&name) {
                        bail!("{pointer}: a schema containing itself through `allOf` is not supported");
                    }
                    self.resolving.borrow_mut().push(name.clone());
                    let converted = self.convert(self.component(&name)?, &pointer);
                    self.resolving.borrow_mut().retain(|n| *n != name);
                    cur = converted?;
                    seen.push(name);
                }
            }
        }
    }

    /// The component of `allOf: [$ref]` when it is an object or a union
    /// (see [`SchemaNode::ref_of`]); a scalar or array target is merged
    /// into its annotations instead, where its constraints are visible.
    fn annotated_ref(&self, all_of: &[oa::ReferenceOr<oa::Schema>], pointer: &str) -> Result<Option<String>> {
        let [oa::ReferenceOr::Reference { reference }] = all_of else { return Ok(None) };
        let name = self.canonical(&Self::component_name(reference, &format!("{pointer}/allOf/0"))?)?;
        let oa::ReferenceOr::Item(target) = self.component(&name)? else { return Ok(None) };
        let structured = match &target.schema_kind {
            oa::SchemaKind::Type(oa::Type::Object(_))
            | oa::SchemaKind::OneOf { .. }
            | oa::SchemaKind::AnyOf { .. }
            | oa::SchemaKind::AllOf { .. } => true,
            oa::SchemaKind::Any(a) => !a.properties.is_empty() || !a.all_of.is_empty() || !a.one_of.is_empty(),
            _ => false,
        };
        Ok(structured.then_some(name))
    }

    /// Follows a chain of component aliases (`A: {$ref: B}`) to the last name.
    pub fn canonical(&self, name: &str) -> Result<String> {
        let mut name = name.to_owned();
        for _ in 0..64 {
            match self.component(&name)? {
                oa::ReferenceOr::Reference { reference } => {
                    name =
                        Self::component_name(reference, &format!("#/components/schemas/{}", pointer_segment(&name)))?;
                }
                oa::ReferenceOr::Item(_) => return Ok(name),
            }
        }
        bail!("#/components/schemas/{}: $ref chain too long", pointer_segment(&name))
    }

    fn node(&self, schema: &oa::Schema, pointer: &str) -> Result<SchemaNode> {
        let d = &schema.schema_data;
        let discriminator = d.discriminator.clone();
        let mut n = SchemaNode {
            pointer: pointer.to_owned(),
            title: d.title.clone(),
            description: d.description.clone(),
            external_docs: d.external_docs.as_ref().map(|e| (e.url.clone(), e.description.clone())),
            default: d.default.clone(),
            example: d.example.clone(),
            nullable: d.nullable,
            read_only: d.read_only,
            write_only: d.write_only,
            deprecated: d.deprecated,
            ..SchemaNode::default()
        };
        match &schema.schema_kind {
            oa::SchemaKind::Type(t) => self.typed(t, &mut n, pointer)?,
            oa::SchemaKind::AllOf { all_of } if self.annotated_ref(all_of, pointer)?.is_some() => {
                n.ref_of = self.annotated_ref(all_of, pointer)?;
            }
            oa::SchemaKind::AllOf { all_of } => {
                let mut members = Vec::new();
                for (i, m) in all_of.iter().enumerate() {
                    let p = format!("{pointer}/allOf/{i}");
                    let sch = self.convert(m, &p)?;
                    members.push((p, self.resolve(&sch)?));
                }
                match members.as_slice() {
                    [(_, m)] if m.ty.is_some_and(|t| t != JsonType::Object) => n = annotated(m, &n),
                    _ => flatten_all_of(&mut n, members, pointer)?,
                }
            }
            oa::SchemaKind::OneOf { one_of } => {
                for (i, m) in one_of.iter().enumerate() {
                    n.one_of.push(self.convert(m, &format!("{pointer}/oneOf/{i}"))?);
                }
                if let Some(d) = &discriminator {
                    n.discriminator = Some(self.discriminator(d, &n.one_of, pointer)?);
                }
            }
            oa::SchemaKind::AnyOf { any_of } => {
                for (i, m) in any_of.iter().enumerate() {
                    n.any_of.push(self.convert(m, &format!("{pointer}/anyOf/{i}"))?);
                }
                if let Some(d) = &discriminator {
                    n.discriminator = Some(self.discriminator(d, &n.any_of, pointer)?);
                }
            }
            oa::SchemaKind::Not { .. } => bail!("{pointer}: `not` is not supported by the generator"),
            oa::SchemaKind::Any(a) if a.not.is_some() => {
                // Beside `type`, `not` makes openapiv3 read the schema as
                // "any": name the keyword rather than a mix of types.
                bail!("{pointer}/not: `not` is not supported by the generator")
            }
            oa::SchemaKind::Any(a) => {
                // `oneOf: [{}]` (exactly one of "anything") and an `anyOf`
                // holding `{}` accept every value: they constrain nothing.
                let trivial_one_of = a.one_of.len() == 1 && a.one_of.iter().all(is_empty_schema);
                let trivial_any_of = a.any_of.iter().any(is_empty_schema);
                let one_of: &[_] = if trivial_one_of { &[] } else { &a.one_of };
                let any_of: &[_] = if trivial_any_of { &[] } else { &a.any_of };
                let objectish = matches!(a.typ.as_deref(), None | Some("object"))
                    && a.items.is_none()
                    && a.enumeration.is_empty()
                    && a.format.is_none()
                    && a.pattern.is_none();
                let shapeless = objectish && a.typ.is_none() && a.properties.is_empty();
                // `{enum: [null]}`: only null (dropshot's `()`).
                if a.typ.is_none()
                    && a.properties.is_empty()
                    && a.items.is_none()
                    && a.all_of.is_empty()
                    && one_of.is_empty()
                    && any_of.is_empty()
                    && a.enumeration == [serde_json::Value::Null]
                {
                    n.enum_values = vec![serde_json::Value::Null];
                    return Ok(n);
                }
                if !one_of.is_empty() || !any_of.is_empty() || !objectish {
                    bail!("{pointer}: schema mixes keywords of several types; give it one `type`");
                }
                if shapeless && a.required.is_empty() && self.annotated_ref(&a.all_of, pointer)?.is_some() {
                    n.ref_of = self.annotated_ref(&a.all_of, pointer)?;
                } else if a.all_of.is_empty() {
                    if !shapeless {
                        bail!("{pointer}: schema mixes keywords of several types; give it one `type`");
                    }
                } else {
                    let mut members = Vec::new();
                    for (i, m) in a.all_of.iter().enumerate() {
                        let p = format!("{pointer}/allOf/{i}");
                        let sch = self.convert(m, &p)?;
                        members.push((p, self.resolve(&sch)?));
                    }
                    match members.as_slice() {
                        // `allOf: [$ref]` to a scalar or array, to give it a
                        // description or `nullable`: the member, annotated.
                        [(_, m)] if shapeless && m.ty.is_some_and(|t| t != JsonType::Object) => {
                            n = annotated(m, &n);
                        }
                        _ => {
                            // Properties beside `allOf` are one more member.
                            for (name, prop) in &a.properties {
                                let p = format!("{pointer}/properties/{}", pointer_segment(name));
                                n.properties
                                    .push(Property { name: name.clone(), schema: self.convert_boxed(prop, &p)? });
                            }
                            n.required = a.required.clone();
                            flatten_all_of(&mut n, members, pointer)?;
                        }
                    }
                }
            }
        }
        if discriminator.is_some() && n.discriminator.is_none() {
            // On a parent schema (polymorphism through allOf) it would mean
            // "any child": not a union the generator can build.
            bail!("{pointer}/discriminator: only a oneOf or anyOf can have a discriminator");
        }
        Ok(n)
    }

    /// The members a discriminator selects: each must be a `$ref` to an
    /// object that has the property as a required string, and every value
    /// must name exactly one member.
    fn discriminator(&self, d: &oa::Discriminator, members: &[Schema], pointer: &str) -> Result<Discriminator> {
        let dp = format!("{pointer}/discriminator");
        let mut names = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let Schema::Ref(name) = m else {
                bail!("{pointer}/oneOf/{i}: a discriminated union's members must be `$ref`s to components");
            };
            let node = self.resolve(m)?;
            let prop = node.properties.iter().find(|p| p.name == d.property_name);
            let is_string = prop.is_some_and(|p| self.resolve(&p.schema).is_ok_and(|n| n.ty == Some(JsonType::String)));
            if !is_string || !node.required.contains(&d.property_name) {
                bail!("{dp}: member {name:?} must have {:?} as a required string property", d.property_name);
            }
            names.push(name.clone());
        }
        let explicit: Vec<(String, String)> = d.mapping.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut mapping = Vec::new();
        for (value, target) in &explicit {
            let name = target.strip_prefix("#/components/schemas/").unwrap_or(target).to_owned();
            if !names.contains(&name) {
                bail!("{dp}/mapping/{}: {target:?} is not a member", pointer_segment(value));
            }
            mapping.push((value.clone(), name));
        }
        // Members the mapping does not name are selected by their own name.
        for name in &names {
            if !mapping.iter().any(|(_, n)| n == name) {
                if mapping.iter().any(|(v, _)| v == name) {
                    bail!("{dp}: the value {name:?} would select two members");
                }
                mapping.push((name.clone(), name.clone()));
            }
        }
        Ok(Discriminator { property: d.property_name.clone(), mapping, explicit })
    }

    fn typed(&self, t: &oa::Type, n: &mut SchemaNode, pointer: &str) -> Result<()> {
        match t {
            // An enum of only `null` (`{type: string, enum: [null]}`, older
            // dropshot's `()`) admits no string; what it means is null.
            // The `type` stays, for the served document; `enum: [null]`
            // decides the Rust type.
            oa::Type::String(s) if !s.enumeration.is_empty() && s.enumeration.iter().all(Option::is_none) => {
                n.ty = Some(JsonType::String);
                n.enum_values = vec![Value::Null];
            }
            oa::Type::Integer(x) if !x.enumeration.is_empty() && x.enumeration.iter().all(Option::is_none) => {
                n.ty = Some(JsonType::Integer);
                n.enum_values = vec![Value::Null];
            }
            oa::Type::String(s) => string(s, n, pointer)?,
            oa::Type::Number(x) => number(x, n, pointer)?,
            oa::Type::Integer(x) => integer(x, n, pointer)?,
            oa::Type::Boolean(b) => {
                n.ty = Some(JsonType::Boolean);
                // `enum: [true]` (a flag that must be set): a `bool` with a
                // rule; `null` in the list is `nullable`'s business.
                n.enum_values = b.enumeration.iter().flatten().map(|v| Value::Bool(*v)).collect();
                if !b.enumeration.is_empty() && n.enum_values.is_empty() {
                    bail!("{pointer}/enum: `null` enum values are not supported");
                }
            }
            oa::Type::Array(a) => {
                n.ty = Some(JsonType::Array);
                n.min_items = a.min_items;
                n.max_items = a.max_items;
                n.unique_items = a.unique_items;
                let items = a.items.as_ref().with_context(|| format!("{pointer}: an array needs `items`"))?;
                n.items = Some(self.convert_boxed(items, &format!("{pointer}/items"))?);
            }
            oa::Type::Object(o) => self.object(o, n, pointer)?,
        }
        Ok(())
    }

    fn object(&self, o: &oa::ObjectType, n: &mut SchemaNode, pointer: &str) -> Result<()> {
        n.ty = Some(JsonType::Object);
        for (name, prop) in &o.properties {
            let p = format!("{pointer}/properties/{}", pointer_segment(name));
            n.properties.push(Property { name: name.clone(), schema: self.convert_boxed(prop, &p)? });
        }
        for r in &o.required {
            if !o.properties.contains_key(r) {
                bail!("{pointer}/required: {r:?} is required but not a property");
            }
        }
        n.required = o.required.clone();
        n.additional_properties = match &o.additional_properties {
            None => None,
            Some(oa::AdditionalProperties::Any(true)) => Some(AdditionalProperties::Any),
            // Without properties, only `{}`: a struct with no fields, closed.
            Some(oa::AdditionalProperties::Any(false)) => Some(AdditionalProperties::Forbidden),
            Some(oa::AdditionalProperties::Schema(s)) => {
                Some(AdditionalProperties::Schema(self.convert(s, &format!("{pointer}/additionalProperties"))?))
            }
        };
        n.min_properties = o.min_properties;
        n.max_properties = o.max_properties;
        Ok(())
    }
}

/// `{}`: a schema without a single keyword.
fn is_empty_schema(s: &oa::ReferenceOr<oa::Schema>) -> bool {
    match s {
        oa::ReferenceOr::Item(s) => {
            matches!(&s.schema_kind, oa::SchemaKind::Any(a) if *a == oa::AnySchema::default())
                && s.schema_data == oa::SchemaData::default()
        }
        oa::ReferenceOr::Reference { .. } => false,
    }
}

fn string(s: &oa::StringType, n: &mut SchemaNode, pointer: &str) -> Result<()> {
    n.ty = Some(JsonType::String);
    n.format = match &s.format {
        oa::VariantOrUnknownOrEmpty::Item(f) => Some(
            match f {
                oa::StringFormat::Date => "date",
                oa::StringFormat::DateTime => "date-time",
                oa::StringFormat::Password => "password",
                oa::StringFormat::Byte => "byte",
                oa::StringFormat::Binary => "binary",
            }
            .to_owned(),
        ),
        oa::VariantOrUnknownOrEmpty::Unknown(f) => Some(f.clone()),
        oa::VariantOrUnknownOrEmpty::Empty => None,
    };
    n.pattern = s.pattern.clone();
    if let Some(p) = &n.pattern {
        n.pattern_rust = Some(super::patterns::check(p).with_context(|| format!("{pointer}/pattern"))?);
    }
    n.min_length = s.min_length;
    n.max_length = s.max_length;
    for v in &s.enumeration {
        match v {
            Some(v) => n.enum_values.push(Value::from(v.clone())),
            None => bail!("{pointer}/enum: `null` enum values are not supported"),
        }
    }
    Ok(())
}

fn number(x: &oa::NumberType, n: &mut SchemaNode, pointer: &str) -> Result<()> {
    n.ty = Some(JsonType::Number);
    n.format = match &x.format {
        oa::VariantOrUnknownOrEmpty::Item(oa::NumberFormat::Float) => Some("float".into()),
        oa::VariantOrUnknownOrEmpty::Item(oa::NumberFormat::Double) => Some("double".into()),
        oa::VariantOrUnknownOrEmpty::Unknown(f) => Some(f.clone()),
        oa::VariantOrUnknownOrEmpty::Empty => None,
    };
    n.minimum = x.minimum;
    n.maximum = x.maximum;
    n.exclusive_minimum = x.exclusive_minimum;
    n.exclusive_maximum = x.exclusive_maximum;
    n.multiple_of = x.multiple_of;
    if !x.enumeration.is_empty() {
        bail!("{pointer}/enum: enums of numbers are not supported");
    }
    Ok(())
}

fn integer(x: &oa::IntegerType, n: &mut SchemaNode, pointer: &str) -> Result<()> {
    n.ty = Some(JsonType::Integer);
    n.format = match &x.format {
        oa::VariantOrUnknownOrEmpty::Item(oa::IntegerFormat::Int32) => Some("int32".into()),
        oa::VariantOrUnknownOrEmpty::Item(oa::IntegerFormat::Int64) => Some("int64".into()),
        oa::VariantOrUnknownOrEmpty::Unknown(f) => Some(f.clone()),
        oa::VariantOrUnknownOrEmpty::Empty => None,
    };
    // Schema bounds are kept as f64 for every numeric type; i64 bounds
    // beyond 2^53 would lose precision, which no contract here needs.
    n.minimum = x.minimum.map(|v| v as f64);
    n.maximum = x.maximum.map(|v| v as f64);
    n.exclusive_minimum = x.exclusive_minimum;
    n.exclusive_maximum = x.exclusive_maximum;
    n.multiple_of = x.multiple_of.map(|v| v as f64);
    for v in &x.enumeration {
        match v {
            Some(v) => n.enum_values.push(Value::from(*v)),
            None => bail!("{pointer}/enum: `null` enum values are not supported"),
        }
    }
    Ok(())
}

/// `allOf: [$ref]` to a scalar or an array, the idiom that gives a
/// reference a description or `nullable`: the member with the annotations
/// of the schema around it.
fn annotated(member: &SchemaNode, around: &SchemaNode) -> SchemaNode {
    let mut merged = member.clone();
    merged.pointer = around.pointer.clone();
    merged.nullable |= around.nullable;
    merged.description = around.description.clone().or(merged.description);
    merged.external_docs = around.external_docs.clone().or(merged.external_docs);
    merged.title = around.title.clone().or(merged.title);
    merged.example = around.example.clone().or(merged.example);
    merged.deprecated |= around.deprecated;
    merged.read_only |= around.read_only;
    merged.write_only |= around.write_only;
    merged
}

/// Merges the members of an `allOf` into one object node. Where two members
/// define the same property, a bare `type: object` yields to the more
/// specific schema (the contract's envelope pattern); any other disagreement
/// is an error rather than a guess.
fn flatten_all_of(n: &mut SchemaNode, members: Vec<(String, SchemaNode)>, pointer: &str) -> Result<()> {
    n.ty = Some(JsonType::Object);
    for (p, m) in members {
        if m.ty.is_some_and(|t| t != JsonType::Object) || !m.one_of.is_empty() || !m.any_of.is_empty() {
            bail!("{p}: allOf members must be objects");
        }
        if n.description.is_none() {
            n.description = m.description.clone();
        }
        if n.external_docs.is_none() {
            n.external_docs = m.external_docs.clone();
        }
        for prop in m.properties {
            match n.properties.iter_mut().find(|p| p.name == prop.name) {
                None => n.properties.push(prop),
                Some(existing) => {
                    if is_bare_object(&existing.schema) {
                        existing.schema = prop.schema;
                    } else if !is_bare_object(&prop.schema) && existing.schema != prop.schema {
                        bail!("{pointer}: allOf members disagree on property {:?}", prop.name);
                    }
                }
            }
        }
        for r in m.required {
            if !n.required.contains(&r) {
                n.required.push(r);
            }
        }
        if m.additional_properties.is_some() {
            n.additional_properties = m.additional_properties;
        }
    }
    Ok(())
}

fn is_bare_object(s: &Schema) -> bool {
    match s {
        Schema::Inline(n) => {
            n.ty == Some(JsonType::Object) && n.properties.is_empty() && n.additional_properties.is_none()
        }
        Schema::Ref(_) => false,
    }
}
