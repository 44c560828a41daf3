/**
 * Named integers packed in the order the addon reads them (its C++ side names the same fields), and
 * read back by name: no index into a geometry is spelled as a number.
 */
export function packedFields<const Fields extends readonly string[]>(fields: Fields) {
  type Field = Fields[number];
  return {
    pack: (values: Record<Field, number>): Int32Array => Int32Array.from(fields.map((field: Field) => values[field])),
    read: (packed: Int32Array, field: Field): number => packed[fields.indexOf(field)],
  };
}
