// @picahq/authkit 1.0.10 ships dist/index.umd.js as a CommonJS file (it
// ends with `exports.useAuthKit = ...`, no UMD wrapper), so a plain
// <script> needs a global `exports` object for it to fill. demo.js reads
// useAuthKit from here. The package itself is loaded unchanged.
"use strict";
window.exports = window.exports || {};
